module wsfloor

go 1.26
