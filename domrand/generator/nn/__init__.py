"""The networks and their ops: reference ops (``ops``), equalized-lr layers, the StyleGAN2
generator and discriminator, the inverter (E) and the distilled student. Imports nothing of
domrand above ``checkpoint``, ``config`` and ``utils`` (the CUDA backend plugs into ``ops``)."""
