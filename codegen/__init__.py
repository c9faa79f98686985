"""exprforge.codegen"""
