"""``stylegan-student``: sim frames through the bundle's distilled student (``domrand distill``)
instead of its inverter + generator: the same styles, one small network (see ``stylegan``)."""

from __future__ import annotations

from domrand.transfer.conditions import register
from domrand.transfer.conditions.stylegan import StyleGANRandomization


@register
class StyleGANStudent(StyleGANRandomization):
    name = "stylegan-student"
    order = 4
    role = "variant"
    color = "#98df8a"
    about = "sim frames through the bundle's distilled student (StyleRandomizer model='student'), a new style per frame"
    model = "student"
    needs = "a bundle with a distilled student"
