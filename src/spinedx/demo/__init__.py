"""Built-in synthetic studies: ``plan`` (the files a demo writes, light enough for the
workflow to import) and one renderer module per study: ``spine`` (the reference study),
``ismf`` and ``canine`` (2-D, sharing ``anatomy`` and ``cohort``), ``vertebral_ct`` and
``brain_mets`` (volumes, sharing ``phantom_volume``).
"""
