// Shows every <time datetime="..."> of the page in the reader's local time (the server writes UTC).

for (const time of document.querySelectorAll("time[datetime]")) {
  const date = new Date(time.dateTime);
  if (!Number.isNaN(date.getTime())) {
    time.title = time.dateTime;
    time.textContent = date.toLocaleString();
  }
}
