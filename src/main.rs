fn main() {
    print!("{}", wpa::api::crd_yaml());
}
