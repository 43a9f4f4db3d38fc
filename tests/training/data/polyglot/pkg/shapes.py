"""Shapes."""


class Shape:
    def area(self):
        raise NotImplementedError(
            "subclasses say how"
        )

    def tiny(self): return 0


class Square(Shape):
    def __init__(self, side):
        self.side = side
        self.label = "square"

    def area(self):
        def squared(x):
            value = x * x
            return value
        return squared(self.side)


def total_area(shapes):
    total = 0
    for s in shapes:
        total += s.area()
    return total
