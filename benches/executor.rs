mod peers;
fn main() { let _ = peers::Shape::Chain; }
