from pkg.shapes import Square


def test_square():
    sq = Square(2)
    assert sq.area() == 4
