"""exprforge.evolve"""
