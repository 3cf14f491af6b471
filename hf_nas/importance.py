def reorder_by_importance(*a, **k): raise NotImplementedError
