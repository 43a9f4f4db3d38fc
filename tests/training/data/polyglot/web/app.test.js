function testGreet() {
  if (greet("a") !== "hi a") throw new Error("bad");
  return true;
}
