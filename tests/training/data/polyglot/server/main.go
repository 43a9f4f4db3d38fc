package main

import "fmt"

type Server struct{ port int }

func (s *Server) Start() error {
	fmt.Println("starting", s.port)
	return nil
}

func main() {
	s := &Server{port: 8080}
	_ = s.Start()
}

func tiny() {}
