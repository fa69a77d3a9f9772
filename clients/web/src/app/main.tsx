import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import "../react/notify.css";
import "./app.css";
import { App } from "./App";
import { applyTheme, loadTheme } from "./theme";

applyTheme(loadTheme());
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
