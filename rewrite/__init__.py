"""exprforge.rewrite"""
