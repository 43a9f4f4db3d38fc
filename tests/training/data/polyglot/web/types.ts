export class Store<T> {
  private items: T[] = [];
  add(item: T): number {
    this.items.push(item);
    return this.items.length;
  }
}

export function first<T>(xs: T[]): T | undefined {
  const head = xs[0];
  return head;
}
