"""exprforge.engine: the IR (op table, Expr), parsing and printing, evaluation, errors,
derivatives."""
