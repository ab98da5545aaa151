module wsload

go 1.26
