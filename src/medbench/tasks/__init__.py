"""Task families (one package each: its declaration in ``family.py``) and the runners that fit
their models. Nothing here imports the tracker: runners return outcomes."""
