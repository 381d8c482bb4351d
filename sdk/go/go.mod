module github.com/butterfn/butter/sdk/go

go 1.26
