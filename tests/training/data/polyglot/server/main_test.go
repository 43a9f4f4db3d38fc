package main

import "testing"

func TestStart(t *testing.T) {
	s := &Server{}
	_ = s.Start()
}
