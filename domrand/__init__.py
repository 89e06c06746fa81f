"""domrand: StyleGAN visual domain randomization for robotics sim-to-real transfer.

Importing domrand registers the pybullet environments with Gymnasium under the ``domrand/``
namespace (registration is by name only; pybullet loads when an env is made).
"""

__version__ = "0.1.0"

from domrand.envs.registration import register_envs as _register_envs

_register_envs()
