pub struct Stack {
    items: Vec<i32>,
}

impl Stack {
    pub fn push(&mut self, x: i32) {
        self.items.push(x);
        self.items.sort();
    }
}

pub fn sum(xs: &[i32]) -> i32 {
    let total = xs.iter().sum();
    total
}
