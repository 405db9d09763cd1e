"""The renderer: draws batches of scenes with OpenGL (moderngl) on a headless EGL context.

On a CPU machine EGL is Mesa's llvmpipe; on an NVIDIA machine the same call gets the GPU. A
:class:`Renderer` owns one context for its lifetime (one per process) and keeps the meshes it has
drawn in GPU buffers, least recently used first out.

How a batch is drawn, and why (a software rasteriser pays per call, per triangle and per fragment):

* **A few draw calls per batch.** Every mesh lives in one shared vertex/index buffer (the mesh arena).
  Each object and each background plane of the batch is one command of a
  ``glMultiDrawElementsIndirect``; the command's base instance selects its record (transform, material,
  light, ids) from an instanced vertex buffer. Commands are grouped by pattern kind, one compiled
  program per kind (llvmpipe executes both sides of a branch), so a batch is at most 14 calls: objects
  first, then backgrounds, so early depth testing skips the hidden background. Back faces are culled
  (meshes are closed and wound counter-clockwise).
* **An atlas of tiles.** Scene ``i`` is rendered into tile ``i`` of a large framebuffer at ``s x res``
  pixels (``s`` = supersampling); the vertex shader maps each scene's clip space into its tile and clip
  distances cut triangles at the tile's edges.
* **One colour target carries the ids.** The fragment shader writes display RGB and, in alpha, the
  packed ids ``instance * 16 + semantic`` (exact in 8 bits); depth is the depth buffer itself.
* **A resolve pass** box-averages each ``s x s`` block of RGB (the anti-aliasing; the paper rendered
  128 px and resized to 64) and takes depth and ids from **one** sample of the block (exact, never
  blended across an edge): sub-sample ``s // 2`` across and down, i.e. at an offset of
  :attr:`Renderer.label_offset` pixels right and down from the pixel centre (0 for odd ``s``, 1/4 px
  for ``s = 2``). Depth is converted there from the depth buffer to metres along the viewing axis. It
  writes the images stacked in readback order to four targets (RGB, depth, instance, semantic), so
  one read per target fills the ``(N, H, W, C)`` output arrays with no copy (depth is rounded to
  float16 by numpy, the same on every driver).

The background is a plane behind the objects, facing the camera (perpendicular to the viewing axis),
at -3x the camera position (docs/PAPER.md §2.4): its depth is :func:`background_depth` everywhere.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable

import numpy as np

from selfstudy.errors import UserError
from selfstudy.scene.pose import Camera
from selfstudy.scene.sampler import KINDS, SceneBatch

SHADERS = Path(__file__).with_name("shaders")

#: Largest side of the default supersampled atlas, pixels (memory: 8 bytes per pixel).
ATLAS_SIDE = 2048
#: Largest resolve target side (OpenGL implementations guarantee at least this).
MAX_TEXTURE = 16384
#: Half side of the square background plane, metres (covers the view at its depth many times over).
BACKGROUND_HALF_SIDE = 10.0
#: Position of the background plane: -3x the camera position.
BACKGROUND_FACTOR = -3.0
RECORD_FLOATS = 48  # 12 vec4 per draw record, see shaders/scene_vertex.glsl
#: Objects per scene: ids are packed as instance * 16 + semantic into 8 bits.
MAX_OBJECTS = 15
_BACKGROUND_KEY = ("background",)


def valid_resolution(res: int) -> bool:
    return isinstance(res, (int, np.integer)) and not isinstance(res, bool) and 32 <= res <= 256 \
        and res % 8 == 0


def check_render_settings(res, supersample) -> None:
    """Raise UserError unless ``res`` is a multiple of 8 in [32, 256] and ``supersample`` in 1..4."""
    if not valid_resolution(res):
        raise UserError(f"bad resolution {res!r}: the image side must be a multiple of 8 from 32 to 256")
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) \
            or not 1 <= supersample <= 4:
        raise UserError(f"bad supersampling {supersample!r}: allowed 1, 2, 3 or 4")


@dataclass
class Rendered:
    """What a render returns; N images of H x W pixels.

    rgb: (N, H, W, 3) uint8 display RGB. depth: (N, H, W) float16, metres along the viewing axis.
    instance: (N, H, W) uint8, 0 background, 1..K the scene's objects. semantic: (N, H, W) uint8,
    0 background, class + 1 for objects.
    """

    rgb: np.ndarray
    depth: np.ndarray
    instance: np.ndarray
    semantic: np.ndarray


def background_depth(camera: Camera | None = None) -> float:
    """Depth (metres along the viewing axis) of the background plane."""
    camera = camera or Camera()
    centre = BACKGROUND_FACTOR * np.asarray(camera.position)
    return float(-camera.to_camera(centre)[2])


class Renderer:
    """A persistent OpenGL context that renders :class:`SceneBatch` es.

    res: final image side, pixels (a multiple of 8 in [32, 256]); supersample: RGB is rendered at
    ``supersample * res`` and box-downsampled; batch: scenes per draw and readback (default: as many as
    fit a 2048-pixel atlas, at most 256); max_models: meshes kept in GPU memory; backend: moderngl
    context backend (``"egl"`` for headless).
    """

    def __init__(self, res: int = 64, supersample: int = 2, batch: int | None = None,
                 camera: Camera | None = None, max_models: int = 4096, backend: str | None = "egl"):
        check_render_settings(res, supersample)
        import moderngl

        self.res = int(res)
        self.supersample = int(supersample)
        self.camera = camera or Camera()
        tile = self.res * self.supersample
        fit = (ATLAS_SIDE // tile) ** 2
        self.batch = int(batch or min(256, fit, MAX_TEXTURE // self.res))
        if not 1 <= self.batch <= MAX_TEXTURE // self.res:
            raise UserError(f"bad render batch {batch}: allowed 1..{MAX_TEXTURE // self.res} at {res} px")
        self.tiles_x = int(np.ceil(np.sqrt(self.batch)))
        self.tiles_y = int(np.ceil(self.batch / self.tiles_x))
        if self.tiles_x * tile > MAX_TEXTURE:
            raise UserError(f"bad render batch {batch}: {self.batch} tiles of {tile} px do not fit a "
                            f"{MAX_TEXTURE} px atlas")

        kwargs = {"backend": backend} if backend else {}
        try:
            self.ctx = moderngl.create_standalone_context(require=430, **kwargs)  # multi-draw indirect
        except Exception as e:  # the driver's message says what is missing (libEGL, a device, ...)
            raise RuntimeError(f"cannot create a headless OpenGL context ({backend}): {e}. "
                               f"On Debian/Ubuntu install libegl1 libgl1-mesa-dri libegl-mesa0.") from e
        self.gl_renderer = self.ctx.info["GL_RENDERER"]
        with self.ctx:
            self._setup(max_models)

    def _setup(self, max_models: int) -> None:
        """Programs, render targets and buffers; runs with this context current."""
        import moderngl

        ctx = self.ctx
        cam = self.camera
        tile = self.res * self.supersample

        # One program per pattern kind (see shaders/patterns.glsl for why).
        vertex = _source("scene_vertex.glsl")
        fragment = _source("patterns.glsl") + _source("scene_fragment.glsl")
        fill = np.asarray(cam.position) / np.linalg.norm(cam.position)
        self._programs = []
        for kind in range(len(KINDS)):
            prog = ctx.program(vertex_shader=vertex,
                               fragment_shader=f"#version 330 core\n#define KIND {kind}\n{fragment}")
            prog["u_view"].write(cam.view_matrix().T.astype("f4").tobytes())
            prog["u_projection"].write(cam.projection_matrix().T.astype("f4").tobytes())
            prog["u_tiles"].value = (float(self.tiles_x), float(self.tiles_y))
            prog["u_eye"].value = tuple(float(x) for x in cam.position)
            prog["u_fill"].value = tuple(float(x) for x in fill)
            self._programs.append(prog)

        # Supersampled atlas: display RGB + packed ids, and the depth buffer (read back as depth).
        size = (self.tiles_x * tile, self.tiles_y * tile)
        self._colour = ctx.texture(size, 4, dtype="f1")
        self._colour.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._zbuffer = ctx.depth_texture(size)
        self._zbuffer.compare_func = ""
        self._zbuffer.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._atlas_fbo = ctx.framebuffer(color_attachments=[self._colour], depth_attachment=self._zbuffer)
        self._atlas_size = size

        # Final images stacked vertically in readback order.
        out = (self.res, self.batch * self.res)
        self._final = [ctx.texture(out, 4, dtype="f1"), ctx.texture(out, 1, dtype="f4"),
                       ctx.texture(out, 1, dtype="u1"), ctx.texture(out, 1, dtype="u1")]
        self._final_fbo = ctx.framebuffer(color_attachments=self._final)
        resolve = f"#version 330 core\n#define SS {self.supersample}\n" + _source("resolve_fragment.glsl")
        self._resolve = ctx.program(vertex_shader=_source("resolve_vertex.glsl"), fragment_shader=resolve)
        self._resolve["u_colour"].value = 0
        self._resolve["u_depth"].value = 1
        self._resolve["u_res"].value = self.res
        self._resolve["u_tiles_x"].value = self.tiles_x
        self._resolve["u_near_far"].value = (cam.near, cam.far)
        self._resolve_vao = ctx.vertex_array(self._resolve, [])

        self._arena = _MeshArena(ctx, max_models=max_models)
        self._arena.ensure([_BACKGROUND_KEY], lambda key: _background_mesh(), pin=True)
        self._records = ctx.buffer(reserve=RECORD_FLOATS * 4 * 16, dynamic=True)
        self._commands = ctx.buffer(reserve=20 * 16, dynamic=True)
        self._vaos: list = []
        self._vao_version = -1
        bg = np.eye(4)
        bg[:3, :3] = cam.rotation  # the plane's x, y span the camera's image plane, +z faces the camera
        bg[:3, 3] = BACKGROUND_FACTOR * np.asarray(cam.position)
        self._background_model = bg

    @property
    def label_offset(self) -> float:
        """Offset (pixels, right and down) of the depth/id sample from each pixel's centre."""
        s = self.supersample
        return (s // 2 + 0.5) / s - 0.5

    def render(self, scenes: SceneBatch, meshes: Callable[[int, int], object],
               out: Rendered | None = None) -> Rendered:
        """Render every scene of ``scenes``.

        meshes: ``meshes(class_id, model_id)`` returns a mesh (``vertices``, ``normals``, ``faces``
        arrays in the object frame) for a (class, model) pair the GPU cache does not hold yet, e.g.
        :func:`selfstudy.scene.shapes.build_model`. out: arrays to fill in place (any leading-axis
        slices of C-contiguous arrays), else new ones are returned.
        """
        n = len(scenes)
        if out is None:
            h = self.res
            out = Rendered(rgb=np.empty((n, h, h, 3), np.uint8), depth=np.empty((n, h, h), np.float16),
                           instance=np.empty((n, h, h), np.uint8), semantic=np.empty((n, h, h), np.uint8))
        with self.ctx:  # make this context current: a process may hold several renderers
            for start in range(0, n, self.batch):
                stop = min(n, start + self.batch)
                self._render_batch(scenes[start:stop], meshes,
                                   [a[start:stop] for a in (out.rgb, out.depth, out.instance, out.semantic)])
        return out

    def _render_batch(self, scenes: SceneBatch, meshes, targets) -> None:
        n, k = scenes.classes.shape
        if k > MAX_OBJECTS:
            raise ValueError(f"at most {MAX_OBJECTS} objects per scene, got {k}")
        keys = list(zip(scenes.classes.ravel().tolist(), scenes.model_id.ravel().tolist()))
        entries = self._arena.ensure(keys + [_BACKGROUND_KEY], lambda key: meshes(*key))
        if self._vao_version != self._arena.version:
            self._build_vaos()

        # Draws sorted by (background last, pattern kind): one multi-draw per group, and objects before
        # backgrounds so that early depth testing skips the hidden part of the background.
        records = self._records_of(scenes)
        geometry = np.array([entries[key] for key in keys] + [entries[_BACKGROUND_KEY]] * n, dtype=np.int64)
        kinds = np.concatenate([scenes.objects.kind.ravel(), scenes.background.kind]).astype(np.int64)
        is_background = np.repeat([0, 1], [n * k, n])
        order = np.lexsort((kinds, is_background))
        records, geometry, kinds, is_background = records[order], geometry[order], kinds[order], \
            is_background[order]
        draws = np.empty((len(order), 5), dtype=np.uint32)
        draws[:, 0] = geometry[:, 2]  # index count
        draws[:, 1] = 1  # one instance
        draws[:, 2] = geometry[:, 1]  # first index
        draws[:, 3] = geometry[:, 0]  # base vertex
        draws[:, 4] = np.arange(len(draws))  # base instance: the draw's record
        _write(self._records, records)
        _write(self._commands, draws)
        group = kinds + len(KINDS) * is_background
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        counts = np.diff(np.r_[starts, len(group)])

        ctx = self.ctx
        self._atlas_fbo.use()
        ctx.viewport = (0, 0, *self._atlas_size)
        ctx.disable(ctx.BLEND)
        ctx.enable(ctx.DEPTH_TEST | ctx.CULL_FACE)  # meshes are closed and wound counter-clockwise
        ctx.depth_func = "<"
        self._atlas_fbo.clear(depth=1.0)
        for start, count in zip(starts.tolist(), counts.tolist()):
            self._vaos[kinds[start]].render_indirect(self._commands, mode=ctx.TRIANGLES, count=count,
                                                     first=start)

        self._final_fbo.use()
        ctx.disable(ctx.DEPTH_TEST | ctx.CULL_FACE)
        view = (0, 0, self.res, n * self.res)
        ctx.viewport = view
        self._colour.use(0)
        self._zbuffer.use(1)
        self._resolve_vao.render(ctx.TRIANGLES, vertices=3)

        rgb, depth, instance, semantic = targets
        # Depth is read as float32 and rounded to float16 here: drivers differ in how they round when
        # they convert (llvmpipe truncates), numpy rounds to nearest.
        metres = np.empty(depth.shape, np.float32)
        for target, attachment, components, dtype in ((rgb, 0, 3, "f1"), (metres, 1, 1, "f4"),
                                                      (instance, 2, 1, "u1"), (semantic, 3, 1, "u1")):
            if target.flags.c_contiguous:
                self._final_fbo.read_into(target, viewport=view, components=components,
                                          attachment=attachment, alignment=1, dtype=dtype)
            else:
                data = self._final_fbo.read(viewport=view, components=components, attachment=attachment,
                                            alignment=1, dtype=dtype)
                target[...] = np.frombuffer(data, dtype=target.dtype).reshape(target.shape)
        depth[...] = metres

    def _records_of(self, scenes: SceneBatch) -> np.ndarray:
        """Per-draw records (n * (k + 1), RECORD_FLOATS) float32: the objects, then the backgrounds."""
        n, k = scenes.classes.shape
        rec = np.zeros((n, k + 1, 12, 4), dtype=np.float64)
        rec[:, :k, 0:3, :3] = scenes.rotation * scenes.scale[..., None, :]
        rec[:, :k, 0:3, 3] = scenes.position
        rec[:, :k, 3:6, :3] = scenes.rotation / scenes.scale[..., None, :]  # inverse transpose of the above
        rec[:, k, 0:3, :] = self._background_model[:3]
        rec[:, k, 3:6, :3] = self._background_model[:3, :3]
        rec[:, :, 3:6, 3] = scenes.light[:, None, 1:4]
        for sl, m in ((slice(0, k), scenes.objects), (k, scenes.background)):
            rec[:, sl, 6:9, :] = m.texture
            # The tint is linear in the pattern weight, so it is mixed into both colours here; the
            # shader works with linear colours (display values squared: gamma 2).
            amount = m.tint_amount[..., None]
            rec[:, sl, 9, :3] = ((1 - amount) * m.colour_a + amount * m.tint) ** 2
            rec[:, sl, 10, :3] = ((1 - amount) * m.colour_b + amount * m.tint) ** 2
        scene = np.arange(n)
        rec[:, :, 9, 3] = (scene % self.tiles_x)[:, None]
        rec[:, :, 10, 3] = (scene // self.tiles_x)[:, None]
        rec[:, :k, 11, 0] = (np.arange(1, k + 1) * 16 + scenes.classes + 1) / 255.0
        objects = rec[:, :k].reshape(n * k, RECORD_FLOATS)
        return np.concatenate([objects, rec[:, k].reshape(n, RECORD_FLOATS)]).astype(np.float32)

    def _build_vaos(self) -> None:
        for vao in self._vaos:
            vao.release()
        names = ["i_model0", "i_model1", "i_model2", "i_normal0", "i_normal1", "i_normal2",
                 "i_texture0", "i_texture1", "i_texture2", "i_colour_a", "i_colour_b", "i_ids"]
        self._vaos = [self.ctx.vertex_array(
            prog,
            [(self._arena.vertices, "3f 3f", "in_position", "in_normal"),
             (self._records, " ".join(["4f"] * len(names)) + "/i", *names)],
            index_buffer=self._arena.indices, index_element_size=4, skip_errors=True)  # KIND 0 has no pattern
            for prog in self._programs]
        self._vao_version = self._arena.version

    def release(self) -> None:
        """Free the context and everything in it."""
        self.ctx.release()


def _source(name: str) -> str:
    return (SHADERS / name).read_text()


def _write(buffer, array: np.ndarray) -> None:
    """Replace a dynamic buffer's contents, growing it (and orphaning the old storage) when needed."""
    data = np.ascontiguousarray(array)
    if data.nbytes > buffer.size:
        buffer.orphan(max(data.nbytes, 2 * buffer.size))
    buffer.write(data)


def _background_mesh():
    h = BACKGROUND_HALF_SIDE
    v = np.array([[-h, -h, 0], [h, -h, 0], [h, h, 0], [-h, h, 0]], dtype=np.float32)
    n = np.tile(np.array([0, 0, 1], dtype=np.float32), (4, 1))
    f = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.uint32)
    return _PlainMesh(v, n, f)


@dataclass
class _PlainMesh:
    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray


class _MeshArena:
    """All cached meshes in one vertex and one index buffer, so any set of them is one multi-draw.

    Entries are ``key -> (base_vertex, first_index, index_count, vertex_count)``, least recently used
    first. The buffers grow (doubling) as meshes arrive. When more than ``max_models`` meshes would be
    held, the least recently used ones not needed by the current batch are dropped down to 3/4 of the
    bound and the rest are compacted into fresh buffers by GPU-side copies; a batch that alone needs more
    meshes than the bound still gets them all. ``version`` changes whenever the buffers are replaced.
    """

    VERTEX_BYTES = 24

    def __init__(self, ctx, max_models: int, vertex_capacity: int = 1 << 16, index_capacity: int = 1 << 18):
        self.ctx = ctx
        self.max_models = max(1, int(max_models))
        self.vertex_capacity = vertex_capacity
        self.index_capacity = index_capacity
        self.vertices = ctx.buffer(reserve=vertex_capacity * self.VERTEX_BYTES)
        self.indices = ctx.buffer(reserve=index_capacity * 4)
        self.vertex_used = 0
        self.index_used = 0
        self.entries: OrderedDict[Hashable, tuple[int, int, int, int]] = OrderedDict()
        self.pinned: set = set()
        self.version = 0

    def ensure(self, keys, build: Callable, pin: bool = False) -> dict:
        """Make every key resident (building missing meshes with ``build(key)``); return the entries."""
        wanted = list(dict.fromkeys(keys))
        missing = []
        for key in wanted:
            if key in self.entries:
                self.entries.move_to_end(key)
            else:
                mesh = build(key)
                v = np.concatenate([np.asarray(mesh.vertices, np.float32),
                                    np.asarray(mesh.normals, np.float32)], axis=1)
                missing.append((key, np.ascontiguousarray(v), np.ascontiguousarray(mesh.faces, np.uint32)))
        if missing:
            if len(self.entries) + len(missing) > self.max_models:
                protected = set(wanted) | self.pinned
                keep_count = max(len(protected), (3 * self.max_models) // 4 - len(missing))
                droppable = [key for key in self.entries if key not in protected]  # oldest first
                drop = set(droppable[:max(0, len(self.entries) - keep_count)])
                self._rebuild([key for key in self.entries if key not in drop], missing)
            elif (self.vertex_used + sum(len(v) for _, v, _ in missing) > self.vertex_capacity
                  or self.index_used + sum(f.size for _, _, f in missing) > self.index_capacity):
                self._rebuild(list(self.entries), missing)
        for key, v, f in missing:
            self.vertices.write(v, offset=self.vertex_used * self.VERTEX_BYTES)
            self.indices.write(f, offset=self.index_used * 4)
            self.entries[key] = (self.vertex_used, self.index_used, f.size, len(v))
            self.vertex_used += len(v)
            self.index_used += f.size
        if pin:
            self.pinned.update(wanted)
        return {key: self.entries[key] for key in wanted}

    def _rebuild(self, keep: list, missing: list) -> None:
        """New buffers holding the ``keep`` entries (in LRU order) with room for ``missing``."""
        need_v = sum(self.entries[k][3] for k in keep) + sum(len(v) for _, v, _ in missing)
        need_i = sum(self.entries[k][2] for k in keep) + sum(f.size for _, _, f in missing)
        vcap, icap = self.vertex_capacity, self.index_capacity
        while need_v > vcap:
            vcap *= 2
        while need_i > icap:
            icap *= 2
        vertices = self.ctx.buffer(reserve=vcap * self.VERTEX_BYTES)
        indices = self.ctx.buffer(reserve=icap * 4)
        entries: OrderedDict = OrderedDict()
        vu = iu = 0
        for key in keep:
            base, first, count, nv = self.entries[key]
            self.ctx.copy_buffer(vertices, self.vertices, nv * self.VERTEX_BYTES,
                                 read_offset=base * self.VERTEX_BYTES, write_offset=vu * self.VERTEX_BYTES)
            self.ctx.copy_buffer(indices, self.indices, count * 4, read_offset=first * 4, write_offset=iu * 4)
            entries[key] = (vu, iu, count, nv)
            vu += nv
            iu += count
        self.vertices.release()
        self.indices.release()
        self.vertices, self.indices = vertices, indices
        self.vertex_capacity, self.index_capacity = vcap, icap
        self.vertex_used, self.index_used = vu, iu
        self.entries = entries
        self.version += 1
