from .supernet import SupernetMixin

__all__ = ["SupernetMixin"]
