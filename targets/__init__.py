"""exprforge.targets"""
