module github.com/amiproxy/amiproxy

go 1.25.0
