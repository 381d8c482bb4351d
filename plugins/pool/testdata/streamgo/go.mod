module streamgo

go 1.26

require github.com/butterfn/butter/sdk/go v0.0.0
