function "f" {
  runtime = "wasm"
  source  = "fn.wasm"
}
