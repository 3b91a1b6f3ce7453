"""spinedx: labelme-annotated spinal MR images to a CNN diagnostic-accuracy study.

Libraries apart from stages (docs/architecture.md): ``readers`` (inputs), ``stats``
(statistics, the R bridge), ``models`` (networks, checkpoints, devices), ``imaging``
(array operations), ``demo`` (built-in synthetic studies); ``paths`` owns every output
path, ``task`` the classes and probability columns, ``config`` the schema. ``stages``
holds one module per workflow stage, each mirrored by a Snakemake rule file of the same
name in ``workflow/rules`` and a ``spinedx <stage>`` command (``cli``); no stage imports
another.
"""

__version__ = "0.1.0"
