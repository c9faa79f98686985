"""exprforge.nn"""
