"""pybullet tabletop environments (installed as ``domrand.envs``).

Envs (registered on ``import domrand``; pybullet is imported only when one is made):

====================  ==============================================  =================
id                    task                                            max_episode_steps
====================  ==============================================  =================
domrand/Reach-v0      flange to 2 cm above the red cube (3-D moves)   50
domrand/Push-v0       push the red cube onto the green disc           100
domrand/Localize-v0   one step: predict the cube's table (x, y)       1
====================  ==============================================  =================

Keyword arguments (all envs)::

    gymnasium.make(id, obs_mode="pixels" | "state" | "pixels+state",
                   visual_domain="sim" | "target" | "randomized",
                   target_preset="target-a",   # or "target-b", "target-c", "seed:N", a TargetConfig,
                                               # "target-lab" (a new look per episode; test half:
                                               # "target-lab-test")
                   image_size=64, renderer="auto" | "tiny" | "egl", return_masks=False,
                   randomize_every=None, render_mode="rgb_array")   # Reach/Push also reward_type=

* Observations: ``pixels`` uint8 HxWx3 ``Box(0, 255)``; ``state`` float32 vector (see each env's
  module); ``pixels+state`` a ``Dict(pixels=, state=)``.
* ``info``: ``is_success`` (bool), ``object_xy`` (float32 [2], m, table frame: origin at the table
  centre, x away from the robot), with ``return_masks=True`` ``mask`` (uint8 HxW class ids:
  0 background, 1 table, 2 robot, 3 target object, 4 goal, 5 distractor; ``scene.CLASS_IDS``).
* ``env.unwrapped.render_as(domain, preset=None, return_mask=False)`` renders the current state in
  another domain without changing the env's state or RNG.
* Scripted experts: ``domrand.envs.experts.expert_action(env)`` (wrapped or not), also
  ``env.unwrapped.expert_action()``.
* Visual domains live in ``domains.py`` (``TargetConfig``, ``TARGET_PRESETS``,
  ``random_target_config``), the varied ``target-lab`` family in ``target_lab.py``, the
  frame-mean colour spread in ``look_spread.py``, frame export in ``export.py`` (``domrand export-frames``), the docs
  figures in ``scripts/env_figures.py``.
"""
