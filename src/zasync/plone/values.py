"""Small values stored with a job (inside its environment or arguments).

They are pickled by value, as the tuple of their slots, so a job stays
small and loads without looking anything up; equality is by that tuple.
"""


class SlotsValue:
    """Base of such values: subclasses name their fields in ``__slots__``."""

    __slots__ = ()

    def __getstate__(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state):
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)

    def __eq__(self, other):
        return type(self) is type(other) and self.__getstate__() == other.__getstate__()

    def __hash__(self):
        return hash(self.__getstate__())
