module example.invalid/amiproxy/clientstests

go 1.25.0

require (
	github.com/heltonmarx/goami v1.0.1-0.20250407084856-13fa30bbc4e3
	github.com/ivahaev/amigo v0.1.11
	github.com/staskobzar/goami2 v1.7.6
)
