function "f" {
  runtime = "wasm"
  source  = "fn.wasm"
  handler = "main"
}
