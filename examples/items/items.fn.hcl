# items: a function that answers as an HTTP API does. POST /items with a
# JSON item answers 201 Created, the item's Location and the item.

project "items" {}

function "items" {
  runtime = "node"
  source  = "functions/items"
  handler = "index.handle"
  timeout = "5s"
  memory  = 64

  trigger "http" {
    route = "POST /items"
  }
}
