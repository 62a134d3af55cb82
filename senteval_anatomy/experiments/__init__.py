"""The paper's experiments, at the top of the package: :mod:`.reproduce` (Jo & Myaeng, ACL 2020, run through the
one pipeline and compared with the numbers its code released; the ``reproduce`` command). The fine-tuning half of the
paper keeps its own folder, :mod:`senteval_anatomy.finetune`, on the same layer. Nothing is imported here.
"""
