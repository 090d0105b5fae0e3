// crate root
