package store

// FreePort exposes freePort to the black-box tests.
var FreePort = freePort
