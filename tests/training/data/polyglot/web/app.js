function greet(name) {
  const text = "hi " + name;
  return text;
}

class Counter {
  increment() {
    this.n += 1;
    return this.n;
  }
}

const double = (x) => {
  const y = x * 2;
  return y;
};

const small = (x) => x;
