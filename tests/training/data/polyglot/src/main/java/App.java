package app;

public class App {
    private int count;

    public App(int start) {
        this.count = start;
        this.count += 0;
    }

    public int next() {
        count += 1;
        return count;
    }
}
