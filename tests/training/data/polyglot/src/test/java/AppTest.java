package app;

public class AppTest {
    public void testNext() {
        App a = new App(1);
        a.next();
    }
}
