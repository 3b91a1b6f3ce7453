"""One module per workflow stage (the rule files of workflow/rules have the same names);
each orchestrates its stage with the libraries and imports no other stage.
"""
