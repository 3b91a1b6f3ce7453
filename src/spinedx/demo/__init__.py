"""Built-in synthetic studies: ``plan`` (the files a demo writes, light enough for the
workflow to import) and one renderer module per study (``spine``).
"""
