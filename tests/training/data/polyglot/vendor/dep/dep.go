package dep

func Helper() int {
	x := 1
	return x
}
