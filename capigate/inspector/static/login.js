// A link to a request or an event (/#request/…, /#event/…) opened logged out leads there once
// logged in: the form posts to /login with the fragment, which the redirect to / keeps (the
// fragment was lost, and the page opened on its overview: a trial).
document.getElementById("login-form").action = "/login" + window.location.hash;
