"""The tabletop scene: one pybullet client with a table, a KUKA iiwa arm and objects.

World frame: the table's centre on the floor; the table top is at ``TABLE_Z``. The "table frame"
used for labels is the world x/y (origin at the table centre, x away from the robot). The arm is
position-controlled through inverse kinematics of its flange ("tip"), which always points down.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Sequence

import numpy as np
import pybullet as p

from domrand.envs import assets
from domrand.envs.camera import setup_renderer

TABLE_Z = 0.625  # height of the table top (m)
ROBOT_BASE = (-0.62, 0.0, TABLE_Z)
# Where objects are placed (table frame, m): x range, y range.
OBJECT_REGION = ((-0.22, 0.08), (-0.22, 0.22))
# Where the tip may be commanded (world, m).
TIP_LOW = np.array([-0.40, -0.32, TABLE_Z + 0.012])
TIP_HIGH = np.array([0.18, 0.32, TABLE_Z + 0.40])
HOME_TIP = np.array([-0.18, 0.0, TABLE_Z + 0.24])
TOOL_OFFSET = 0.045  # from the link-7 frame to the flange face (m)
CUBE_HALF = 0.025  # the target cube is 5 cm
TIME_STEP = 1.0 / 120.0
SUBSTEPS = 6  # physics steps per env step (control at 20 Hz)
DOWN = p.getQuaternionFromEuler([0.0, np.pi, 0.0])
REST_Q = (0.0, 0.5, 0.0, -1.6, 0.0, 1.0, 0.0)  # null-space preference of the IK
DISTRACTOR_MESHES = ("000", "003", "017", "042")  # pybullet_data/random_urdfs ids
# Visual-only clutter of the target-lab look (no collision, no mass): kind -> (shape, size, height).
# Hidden (out of every camera's view) unless a look shows it; class "distractor" in masks.
CLUTTER_SHAPES = {
    "book": ("box", (0.09, 0.065, 0.02), 0.02),  # half extents (m); half height above the table
    "mug": ("cylinder", (0.035, 0.09), 0.045),  # radius, length (m)
    "paper": ("box", (0.105, 0.075, 0.001), 0.001),
}
CLUTTER_PARK = (40.0, 40.0, -10.0)  # where hidden clutter waits (beyond every camera's far plane)

# Segmentation classes reported in ``info["mask"]``.
CLASS_IDS = {"background": 0, "table": 1, "robot": 2, "object": 3, "goal": 4, "distractor": 5}


@dataclasses.dataclass(frozen=True)
class Part:
    """One visual shape group the visual domains re-texture: a body link and its class name."""

    name: str  # e.g. "table", "robot:3", "object", "distractor:0"
    body: int
    link: int
    cls: str
    has_uv: bool  # whether its mesh has texture coordinates (patterns show) or not (flat colour)


class Scene:
    """A pybullet DIRECT client holding the tabletop scene; all calls use its own client id."""

    def __init__(
        self,
        n_distractors: int = 2,  # distractor shapes from random_urdfs (0..4)
        with_goal: bool = False,  # add the (visual-only) goal disc
        renderer: str = "tiny",  # "tiny", "egl" or "auto"
        egl_textures: Callable[[], Sequence[str]] | None = None,  # texture files to load first under EGL
    ) -> None:
        if not 0 <= n_distractors <= len(DISTRACTOR_MESHES):
            raise ValueError(f"n_distractors must be in 0..{len(DISTRACTOR_MESHES)}, got {n_distractors}")
        self.client = p.connect(p.DIRECT)
        c = self.client
        # The EGL plugin must be loaded before any body, or it never learns about them.
        self.renderer_flag = setup_renderer(c, renderer)
        self._textures: dict[str, int] = {}
        self._late_texture_warned = False
        self._bodies_loaded = False
        if self.renderer_flag == p.ER_BULLET_HARDWARE_OPENGL and egl_textures is not None:
            # pybullet's EGL plugin numbers textures differently from the server once bodies with
            # their own textures are loaded, so every texture a visual domain uses is loaded first.
            for path in egl_textures():
                self.texture(path)
        p.setPhysicsEngineParameter(
            fixedTimeStep=TIME_STEP, numSolverIterations=30, deterministicOverlappingPairs=1, physicsClientId=c
        )
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        self.plane = p.loadURDF(assets.data_path("plane.urdf"), physicsClientId=c)
        self.table = p.loadURDF(assets.data_path("table", "table.urdf"), [0, 0, 0], physicsClientId=c)
        self.robot = p.loadURDF(assets.kuka_urdf(), ROBOT_BASE, useFixedBase=True, physicsClientId=c)
        self.n_joints = p.getNumJoints(self.robot, physicsClientId=c)
        info = [p.getJointInfo(self.robot, j, physicsClientId=c) for j in range(self.n_joints)]
        self.q_low = np.array([i[8] for i in info])
        self.q_high = np.array([i[9] for i in info])
        self.cube = p.loadURDF(assets.data_path("cube_small.urdf"), [0, 0, TABLE_Z + CUBE_HALF], physicsClientId=c)
        p.changeDynamics(self.cube, -1, lateralFriction=0.6, spinningFriction=0.001, physicsClientId=c)
        self.distractors = [self._load_distractor(DISTRACTOR_MESHES[i], i) for i in range(n_distractors)]
        self.goal = self._make_goal() if with_goal else None
        self.clutter = {kind: self._make_clutter(kind, i) for i, kind in enumerate(CLUTTER_SHAPES)}
        self._clutter_shown: tuple = ()
        self.robot_colors = {d[1]: tuple(d[7]) for d in p.getVisualShapeData(self.robot, physicsClientId=c)}
        self.parts = self._collect_parts()
        self._class_lut = self._make_class_lut()
        self._bodies_loaded = True
        self.home_q = self._solve_home()
        self.tip_target = HOME_TIP.copy()
        self._initial_state = p.saveState(physicsClientId=c)

    # ----------------------------------------------------------------------------------- building
    def _load_distractor(self, mesh_id: str, index: int) -> int:
        c = self.client
        src = assets.data_path("random_urdfs", mesh_id, f"{mesh_id}.obj")
        scale = [0.014] * 3
        col = p.createCollisionShape(p.GEOM_MESH, fileName=src, meshScale=scale, physicsClientId=c)
        vis = p.createVisualShape(p.GEOM_MESH, fileName=assets.uv_mesh(src), meshScale=scale, physicsClientId=c)
        body = p.createMultiBody(0.1, col, vis, [20.0 + 2.0 * index, -20.0, 5.0], physicsClientId=c)
        p.changeDynamics(body, -1, lateralFriction=0.8, physicsClientId=c)
        return body

    def _make_goal(self) -> int:
        c = self.client
        vis = p.createVisualShape(p.GEOM_CYLINDER, radius=0.035, length=0.002, physicsClientId=c)
        return p.createMultiBody(0.0, -1, vis, [0, 0, TABLE_Z + 0.001], physicsClientId=c)

    def _make_clutter(self, kind: str, index: int) -> int:
        """A visual-only body (no collision shape, no mass) for one clutter kind, parked out of view."""
        c = self.client
        shape, size, _ = CLUTTER_SHAPES[kind]
        if shape == "box":
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=list(size), physicsClientId=c)
        else:
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=size[0], length=size[1], physicsClientId=c)
        park = [CLUTTER_PARK[0] + 2.0 * index, CLUTTER_PARK[1], CLUTTER_PARK[2]]
        return p.createMultiBody(0.0, -1, vis, park, physicsClientId=c)

    def _solve_home(self) -> np.ndarray:
        """Joint angles that put the tip at ``HOME_TIP`` pointing down (iterated IK)."""
        q = np.asarray(REST_Q, float)
        for _ in range(20):
            for j in range(self.n_joints):
                p.resetJointState(self.robot, j, float(q[j]), physicsClientId=self.client)
            q = self._ik(HOME_TIP, rest=REST_Q)
        return q

    def _ik(self, tip: np.ndarray, rest: tuple | np.ndarray) -> np.ndarray:
        goal = np.asarray(tip, float) + np.array([0.0, 0.0, TOOL_OFFSET])
        q = p.calculateInverseKinematics(
            self.robot,
            self.n_joints - 1,
            goal.tolist(),
            DOWN,
            lowerLimits=self.q_low.tolist(),
            upperLimits=self.q_high.tolist(),
            jointRanges=(self.q_high - self.q_low).tolist(),
            restPoses=[float(v) for v in rest],
            maxNumIterations=30,
            residualThreshold=1e-4,
            physicsClientId=self.client,
        )
        return np.asarray(q[: self.n_joints])

    def _collect_parts(self) -> list[Part]:
        parts = [Part("floor", self.plane, -1, "background", True), Part("table", self.table, -1, "table", True)]
        parts += [Part(f"robot:{link}", self.robot, link, "robot", True) for link in range(-1, self.n_joints)]
        parts.append(Part("object", self.cube, -1, "object", True))
        parts += [Part(f"distractor:{i}", b, -1, "distractor", True) for i, b in enumerate(self.distractors)]
        if self.goal is not None:
            parts.append(Part("goal", self.goal, -1, "goal", True))
        return parts

    def _make_class_lut(self) -> np.ndarray:
        n_bodies = p.getNumBodies(physicsClientId=self.client)
        lut = np.zeros(n_bodies + 1, np.uint8)  # index = body id + 1 (pybullet uses -1 for nothing)
        for part in self.parts:
            lut[part.body + 1] = CLASS_IDS[part.cls]
        for body in self.clutter.values():
            lut[body + 1] = CLASS_IDS["distractor"]
        return lut

    # ----------------------------------------------------------------------------------- visuals
    def texture(self, path: str) -> int:
        """pybullet texture id of an image file, loaded once per client."""
        tid = self._textures.get(path)
        if tid is None:
            if self._bodies_loaded and self.renderer_flag == p.ER_BULLET_HARDWARE_OPENGL:
                if not self._late_texture_warned:
                    warnings.warn(
                        "texture loaded after the scene was built: pybullet's EGL renderer may show a "
                        "different texture (use renderer='tiny' for exact visual domains)",
                        stacklevel=3,
                    )
                    self._late_texture_warned = True
            tid = p.loadTexture(path, physicsClientId=self.client)
            self._textures[path] = tid
        return tid

    def set_look(self, part: Part, texture: str | None, rgba: tuple[float, float, float, float]) -> None:
        """Give one part a texture file (None: plain white) multiplied by a colour."""
        tid = self.texture(texture or assets.white_texture())
        p.changeVisualShape(part.body, part.link, textureUniqueId=tid, rgbaColor=list(rgba), physicsClientId=self.client)

    def show_clutter(self, items: Sequence[tuple[str, tuple[float, float, float], str | None, tuple]]) -> None:
        """Show clutter ``(kind, (x, y, yaw), texture or None, rgba)`` on the table; hide the rest.

        Visual-only: nothing here changes the physics. No pybullet call when nothing changes.
        """
        items = tuple(items)
        if items == self._clutter_shown:
            return
        c = self.client
        shown = {kind for kind, *_ in items}
        for i, (kind, body) in enumerate(self.clutter.items()):
            if kind not in shown:
                park = [CLUTTER_PARK[0] + 2.0 * i, CLUTTER_PARK[1], CLUTTER_PARK[2]]
                p.resetBasePositionAndOrientation(body, park, [0, 0, 0, 1], physicsClientId=c)
        for kind, (x, y, yaw), tex, rgba in items:
            body = self.clutter[kind]
            z = TABLE_Z + CLUTTER_SHAPES[kind][2] + 0.0005
            orn = p.getQuaternionFromEuler([0.0, 0.0, float(yaw)])
            p.resetBasePositionAndOrientation(body, [float(x), float(y), z], orn, physicsClientId=c)
            tid = self.texture(tex or assets.white_texture())
            p.changeVisualShape(body, -1, textureUniqueId=tid, rgbaColor=list(rgba), physicsClientId=c)
        self._clutter_shown = items

    def class_mask(self, seg: np.ndarray) -> np.ndarray:
        """Map a pybullet body-id segmentation buffer to ``CLASS_IDS`` (uint8 HxW)."""
        ids = np.clip(seg, -1, len(self._class_lut) - 2) + 1
        return self._class_lut[ids]

    # ----------------------------------------------------------------------------------- state
    def reset(self, object_xy: np.ndarray, object_yaw: float, distractor_xy: list[np.ndarray], distractor_yaw: list[float], goal_xy: np.ndarray | None = None, q0: np.ndarray | None = None) -> None:
        """Put the scene into a fresh state (robot home pose or ``q0``, objects at the given places)."""
        c = self.client
        p.restoreState(self._initial_state, physicsClientId=c)
        # Drop contact caches of the last episode: park the movable bodies far apart so their
        # broadphase pairs (and persistent manifolds) are removed, then place them.
        for i, body in enumerate([self.cube, *self.distractors]):
            self._place(body, np.array([10.0 + 2.0 * i, 10.0]), 0.0, 5.0)
        p.performCollisionDetection(physicsClientId=c)
        q = np.asarray(self.home_q if q0 is None else q0, float)
        for j in range(self.n_joints):
            p.resetJointState(self.robot, j, float(q[j]), 0.0, physicsClientId=c)
        self._place(self.cube, object_xy, object_yaw, TABLE_Z + CUBE_HALF + 0.001)
        for body, xy, yaw in zip(self.distractors, distractor_xy, distractor_yaw):
            self._place(body, xy, yaw, TABLE_Z + 0.03)
        if self.goal is not None and goal_xy is not None:
            p.resetBasePositionAndOrientation(
                self.goal, [float(goal_xy[0]), float(goal_xy[1]), TABLE_Z + 0.001], [0, 0, 0, 1], physicsClientId=c
            )
        self.tip_target = self.tip_position()
        self._command(q)
        for _ in range(SUBSTEPS):  # let objects settle
            p.stepSimulation(physicsClientId=c)

    def _place(self, body: int, xy: np.ndarray, yaw: float, z: float) -> None:
        orn = p.getQuaternionFromEuler([0.0, 0.0, float(yaw)])
        p.resetBasePositionAndOrientation(body, [float(xy[0]), float(xy[1]), z], orn, physicsClientId=self.client)
        p.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)

    def _command(self, q: np.ndarray) -> None:
        p.setJointMotorControlArray(
            self.robot,
            list(range(self.n_joints)),
            p.POSITION_CONTROL,
            targetPositions=[float(v) for v in q],
            forces=[300.0] * self.n_joints,
            positionGains=[0.2] * self.n_joints,
            physicsClientId=self.client,
        )

    def move_tip(self, delta: np.ndarray) -> None:
        """Move the commanded tip position by ``delta`` (m, world), clipped to the workspace; simulate one step."""
        c = self.client
        tip = self.tip_position()
        target = np.clip(self.tip_target + delta, TIP_LOW, TIP_HIGH)
        # Never let the command run away from where the tip really is (e.g. when blocked).
        self.tip_target = np.clip(target, tip - 0.08, tip + 0.08)
        self._command(self._ik(self.tip_target, rest=self.home_q))
        for _ in range(SUBSTEPS):
            p.stepSimulation(physicsClientId=c)

    def tip_position(self) -> np.ndarray:
        """World position of the flange face centre (the end effector)."""
        s = p.getLinkState(self.robot, self.n_joints - 1, computeForwardKinematics=True, physicsClientId=self.client)
        rot = np.asarray(p.getMatrixFromQuaternion(s[5])).reshape(3, 3)
        return np.asarray(s[4]) + rot[:, 2] * TOOL_OFFSET

    def joint_positions(self) -> np.ndarray:
        states = p.getJointStates(self.robot, list(range(self.n_joints)), physicsClientId=self.client)
        return np.array([s[0] for s in states])

    def body_pose(self, body: int) -> tuple[np.ndarray, float]:
        """(world xyz, yaw) of a body."""
        pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        return np.asarray(pos), float(p.getEulerFromQuaternion(orn)[2])

    def object_position(self) -> np.ndarray:
        return self.body_pose(self.cube)[0]

    def goal_xy(self) -> np.ndarray | None:
        if self.goal is None:
            return None
        return self.body_pose(self.goal)[0][:2]

    def close(self) -> None:
        if self.client >= 0:
            try:
                p.disconnect(physicsClientId=self.client)
            except p.error:  # already gone
                pass
            self.client = -1
