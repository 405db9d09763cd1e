from selfstudy.cli.main import entry

entry()
