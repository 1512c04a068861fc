module github.com/maskpredictor/maskpredictor

go 1.26
