"""The solver core: tableaux, step-size control and integration loops shared by all backends."""
