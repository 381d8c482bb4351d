function "resize" {
  runtime = "wasm"
  source  = "resize.wasm"
}
