def make_square(side):
    from pkg.shapes import Square
    square = Square(side)
    return square
