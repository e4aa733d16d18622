module github.com/patchrec/patchrec/bindings/go

go 1.19
