package main

func (x *Request) GetName() string {
	if x != nil {
		return x.Name
	}
	return ""
}
