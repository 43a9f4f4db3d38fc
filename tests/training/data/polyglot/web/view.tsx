export function Badge(props: { label: string }) {
  const label = props.label.toUpperCase();
  return <span>{label}</span>;
}
