"""Where boot memory goes: the timeline of a boot, memory maps, pictures and RAM budgets.

:func:`~bootmem.report.timeline.record_boot` boots an image and records pages by owner at
every allocator event; :mod:`.memmap` draws physical memory as cells coloured by owner;
:mod:`.plot` writes both as a PNG or SVG; :mod:`.budget` searches for the smallest RAM that
boots an image.
"""
